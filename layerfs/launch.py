"""The ``layerfs`` command's entry point: the CLI is imported with the cyclic garbage
collector paused. Importing trio and click makes some hundred thousand objects that
live as long as the process; collecting among them while they are made is wasted work
(about 0.04 s of CPU on each start here, a sixth of the start-up), and afterwards
they are frozen so that no later collection scans them again."""

import gc


def main() -> None:
    gc.disable()
    try:
        from .cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    cli_main()
