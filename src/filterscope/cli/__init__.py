"""Command-line interface: ``filterscope <command>``; a thin layer over the library."""
