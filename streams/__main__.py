from cityhub.streams.cli import main

main()
