/dev/fd/3: line 64: ./wsp/wsp: No such file or directory
