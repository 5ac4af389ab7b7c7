"""The `remove-background` command: the same engine as GIMP's, on files and folders."""
