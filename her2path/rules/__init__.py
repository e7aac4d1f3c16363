"""Every decision made from measurements, and nothing else. Where each rule lives:

======================================  ==========================================================
rule                                    code (thresholds and texts: data)
======================================  ==========================================================
a cell's class 0 / 1+ / 2+ / 3+         ``rules.ihc.cell_classes`` (``configs/default.yaml: ihc.cell_class``)
IHC slide / tile score, sub-label       ``rules.ihc.ihc_decision`` (``configs/guidelines/*.yaml: ihc``)
ISH group, call, next step,             ``rules.ish.ish_decision`` (``configs/guidelines/*.yaml: ish``
heterogeneity, a call near a cut-off    and its status rows for ISH without IHC)
case status from IHC and ISH            ``rules.status.classify`` (``configs/guidelines/*.yaml: status``)
warnings and review flags               ``rules.flags``
======================================  ==========================================================

The measuring stages (``ihc/``, ``ish/``) never import this package; the
pipeline hands their measurements to these functions.
"""
