"""`builder bake`: the Packer template, its inputs and var file, the cache, and the images it made."""
