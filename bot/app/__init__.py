"""The application: settings, what a process holds open, the web app, background jobs, the worker."""
