"""CLI sub-commands, one module each (see prunesearch/cli.py for the module contract)."""
