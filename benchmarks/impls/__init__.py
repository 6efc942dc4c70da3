"""One module per implementation under test; each exposes classes following :class:`base.Impl`."""
