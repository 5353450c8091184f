from sweep.cli import console

console()
