"""Pairing policies: who meets whom each round."""
