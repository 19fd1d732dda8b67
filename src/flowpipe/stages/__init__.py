"""Built-in stages. They use only the public SDK and register through the ``flowpipe.stages``
entry-point group, exactly as a third-party package would."""
