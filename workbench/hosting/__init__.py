"""workbench/hosting."""
