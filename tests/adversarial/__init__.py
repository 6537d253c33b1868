"""Adversarial tests: attacks the model could send, run through ``Sandbox.execute``.

Every test records its attack, the expected outcome and what was observed
(``record`` fixture); ``scripts/adversarial_report.py`` turns them into
``tests/adversarial/results.md``.
"""
