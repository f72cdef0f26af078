# A first mmdbg session: the machine, its memory, and one allocation through the
# buddy allocator.  Run it with:
#
#   mmdbg --machine 'mem=1G cpus=2' -x docs/examples/first-session.cmd
#
# Lines starting with "#" are comments; every other line is a shell command
# ("help" lists them, "help kmem" explains one).

# The simulated system, then its memory as crash shows it.
sys
kmem -i
kmem -z

# Allocate 8 pages (order 3) the way kernel code does.  The result is a
# struct page pointer, remembered as $1.
call __alloc_pages(GFP_KERNEL, 3)
kmem -p $1

# The free lists now lack the block that was split to satisfy it...
kmem -f

# ...and give it back.
call __free_pages($1, 3)

# The kernel log: the boot messages (and any allocation failure report).
log
