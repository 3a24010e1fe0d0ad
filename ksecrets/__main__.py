from ksecrets.cli import run

run()
