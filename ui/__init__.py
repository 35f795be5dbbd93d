"""Browser UI helpers: video in (media), drawing (render) and file exports (export); numpy only."""
