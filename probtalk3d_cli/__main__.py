"""`python -m probtalk3d_cli` runs the command-line interface."""

from probtalk3d_cli.cli import main

if __name__ == "__main__":
    main()
