from shipskip.cli import run

run()
