"""The privacy side of cityhub; for now the public register of processing activities."""
