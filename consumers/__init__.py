"""Real consumers built on streamflow; each subpackage is an application users can copy."""
