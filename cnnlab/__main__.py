from cnnlab.cli import app

app(prog_name="cnnlab")
