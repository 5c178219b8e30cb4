from gpact.cli import main

main()
