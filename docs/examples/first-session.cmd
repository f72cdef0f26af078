sys
kmem -i
kmem -z
call __alloc_pages(GFP_KERNEL, 3)
kmem -f
log
