"""Tools over whole movies: describe and validate (:mod:`.inspect`), repair a crashed movie
(:mod:`.repair`), convert between HDF5 and zarr (:mod:`.convert`)."""
