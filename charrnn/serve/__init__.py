"""`charrnn serve`: trained models over HTTP for the clients people already use, and a page."""
