"""Code shared by the Snakemake scripts (workflow/scripts/) that belongs to no world: it may start processes in
several environments. Imported as ``workflow.lib`` with the repository on the path (pytest's pythonpath, and
the scripts put the rule's ``params.repo`` first)."""
