"""The engine as a service: the Ray Serve deployment (``deployment``) and the calls it runs
(``calls``), its configuration (``config``), the JSON/tensor wire format (``wire``), and the
client that talks to it (``client``, also importable as ``saliency_core.remote``).

Only ``deployment`` imports Ray; a client's process needs none of it.
"""
