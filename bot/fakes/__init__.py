"""Local fakes of WeChat and WeCom that speak their wire: `mst demo` and the tests use them."""
