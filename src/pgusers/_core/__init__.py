"""The rules of pgusers, with no I/O: argument checks, identities, the codec, password
hashing, every SQL statement and migration, and each operation as a generator of
steps (:mod:`pgusers._core.steps`) that a driver runs."""
