"""The demo's weather app: readings published to Ensign and the readings received back."""
