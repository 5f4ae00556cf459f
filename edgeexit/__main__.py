"""``python -m edgeexit`` runs the CLI."""
from edgeexit.cli import main

if __name__ == "__main__":
    main()
