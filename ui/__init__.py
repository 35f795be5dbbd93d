"""The Gradio page: layout and event wiring, the handlers, the per-browser session store and
the guard of each session's files. Everything else (the work on a video, the model engine,
media, rendering, file formats) is the annotation core, :mod:`annotation`."""
