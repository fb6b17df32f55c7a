"""Interfaces to workflow engines: ``nipype`` (a Nipype node around the fit workflow)."""
