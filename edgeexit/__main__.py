"""``python -m edgeexit`` runs the CLI."""
from edgeexit.console import main

if __name__ == "__main__":
    main()
