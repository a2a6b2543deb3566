"""The commands of ``dpcnn`` that are more than one library call: each a thin layer that reads its
arguments, calls the library and returns the text to print (``dpcnn.cli`` parses the command line).

- :mod:`~dpcnn.commands.evaluate` (``dpcnn eval``), :mod:`~dpcnn.commands.search`,
  :mod:`~dpcnn.commands.alt_text`, :mod:`~dpcnn.commands.export`, :mod:`~dpcnn.commands.demo`.

Import the submodule you need (``from dpcnn.commands.evaluate import evaluate_run``): this package
imports nothing, so ``dpcnn --help`` stays fast.
"""
