"""The ``rnnkit`` command line: argparse subcommands, one file each."""
