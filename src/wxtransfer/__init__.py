"""wxtransfer: wx.uploadFile / wx.downloadFile for Python, on libcurl."""
