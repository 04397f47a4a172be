"""The process edge: the command line, the daemon, settings, systemd and the journal."""
