// Package output renders a command's result as a table, JSON or CSV, and puts it where the
// user asked: a file, stdout or a device, without ever replacing what the user did not name.
// It imports nothing of llmtape's.
//
// # Rendering
//
// A result is a list of Sections: a title, column names and rows of Cells. A Cell is text
// (Text) or a number (Num, Int, Change) that each format renders its own way: FormatNum's at
// most seven characters in a table, the shortest exact form in CSV. Format names a
// rendering, as the --format flag of every command does; ParseFormat checks one.
//
//   - WriteTable writes sections as aligned text under "== title ==" lines (analyze,
//     report, compare); Section.WriteText writes one section without its title (ls, merge).
//   - WriteCSV writes sections in long form, one record per cell (section,row,column,value);
//     Section.WriteCSV writes one section flat, a header then one record per row (ls,
//     show, merge). Every text cell goes through CSVCell.
//   - WriteJSON writes any value as indented JSON and a newline: the one shape of every
//     command's --format json.
//
// # Output files
//
// Create (or Write, which wraps it) takes the path the user gave and Options naming the store
// the command reads or writes:
//
//   - "-" (or "") is Options.Stdout, os.Stdout by default;
//   - a path that is the store, by any name (a symlink, a hard link, another relative path;
//     compared with os.SameFile), is refused with ErrIsStore before anything is opened. Check
//     does the same test alone, so that a command can refuse before it reads the store;
//   - a regular file, or a path where nothing is, is written atomically: the bytes go to a
//     temporary file in the same directory, which Commit renames over the path. A failed or
//     abandoned write (Close without Commit) leaves the old file as it was and removes the
//     temporary file. An existing file keeps its permission bits, and one this process may
//     not write is refused as the shell would refuse it; a new one gets Options.Perm (0644
//     by default) less the umask;
//   - a symlink is never replaced: it is followed, and its final target is written as above
//     (a link to a regular file stays a link; a dangling link gets its target created);
//   - a character device (/dev/null, a terminal), a FIFO or any other file that is not
//     regular is opened for writing and written in place: never truncated, never renamed;
//   - this process's own descriptors (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N,
//     and links to them) are opened for appending, so "-o /dev/stdout >> log" appends as the
//     shell said.
//
// # Caveats
//
// Bytes written to a device, a FIFO or stdout cannot be taken back: Close without Commit only
// stops writing there. Writing a regular file needs permission to create a file in its
// directory. Renaming gives the path a new inode: the file's owner becomes the writer, and
// other hard links to the old file keep the old content.
package output
