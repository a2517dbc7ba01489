"""workbench/jobs."""
