"""Dual-probe ISH: nuclei, spots with cluster estimates, per-nucleus counts and the case call."""
