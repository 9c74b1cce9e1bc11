"""The `vosbench` command. Each subcommand's module is imported only when it runs, so that
`vosbench eval` starts without loading torch or Lightning."""

import importlib
import sys

# subcommand -> (module with a `main(argv, prog)` function, one-line description)
SUBCOMMANDS = {
    "eval": ("vosbench.metrics.cli", "score predicted label PNGs with J, F and T (DAVIS toolkits)"),
    "data": ("vosbench.data_commands", "synth, check, flow: synthetic set, dataset checks, flow"),
    "leaderboard": ("vosbench.leaderboard", "tables (md, LaTeX, CSV) of the results rows, with the "
                                            "papers' reported numbers"),
    "bench": ("vosbench.bench", "fit a method, test its best checkpoint, write the results row"),
    "sweep": ("vosbench.sweep", "the trials of a W&B sweep file, offline (W&B's engine) or online"),
    "weights": ("vosbench.weights", "import: an authors' released checkpoint as a checkpoint of "
                                    "the method's official variant"),
    "fit": ("vosbench.lightning_cli", "train a method (LightningCLI; --config, --model, --data)"),
    "validate": ("vosbench.lightning_cli", "score a checkpoint on the validation split"),
    "test": ("vosbench.lightning_cli", "score a checkpoint on the test split"),
    "predict": ("vosbench.lightning_cli", "write predicted label PNGs for the test split"),
    "list": ("vosbench.lightning_cli", "the available methods and datamodules"),
}


def usage() -> str:
    lines = ["usage: vosbench <command> [options]", "", "commands:"]
    lines += [f"  {name:<12} {description}" for name, (_, description) in SUBCOMMANDS.items()]
    lines += ["", "Run 'vosbench <command> --help' for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from vosbench import __version__

        print(f"vosbench {__version__}")
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"vosbench: error: unknown command {argv[0]!r}; known: {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return module.main(argv[1:], prog=f"vosbench {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
