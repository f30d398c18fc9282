"""runner: the command line over libcontainer. Flags, output and exit codes only."""
