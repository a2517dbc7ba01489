"""Getting inputs in and results out: image files and bytes to tensors (``images``), and
tensors, arrays and other libraries' results to NumPy (``interop``)."""
