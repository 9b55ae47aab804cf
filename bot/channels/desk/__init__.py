"""The service desk as a channel (bot.rules.desk): where what the court says to a party
helped at the desk goes (`sender.py`: their own WeChat when they have one, else kept at the
desk and the assistant told), and the slip the desk prints for them (`slip.py`,
`/slip/<signed id>`). Staff act for the party from the console's desk page
(bot.channels.webconsole.desk) or from their own WeChat (`代办`, handlers.desk)."""

from bot.channels.desk.sender import DeskSender
from bot.channels.desk.slip import setup

__all__ = ["DeskSender", "setup"]
