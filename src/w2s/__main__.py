from w2s.cli import main

main()
