"""The compliance report: facts -> ``compliance.ComplianceReport`` -> table | json | csv | html (``render``)."""
