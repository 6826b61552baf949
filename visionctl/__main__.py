from visionctl.cli import app

app(prog_name="visionctl")
