"""QA review of scored tiles in the browser: FastAPI app, SQLite decision store, export."""
