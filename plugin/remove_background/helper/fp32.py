"""The form of an ONNX model the CPU runs best: fp16 weights made fp32, unused outputs not computed.

onnxruntime's CPU provider has no fp16 convolution: on an fp16 model it runs a Cast before and
after every one (ISNet: 1.87 s per 1024² run, 1.66 s in fp32 with the same masks).  Here every
fp16 initializer and Constant becomes fp32 and every Cast to fp16 a Cast to fp32 (which
onnxruntime then drops as a no-op); the shape annotations (value_info) go, since they name fp16.
The nodes are also put in topological order (IMG.LY's file has its Casts at the end), as ONNX
requires and onnx's shape inference, which quantisation relies on, needs.

onnxruntime also runs every node of a graph, whether an output asked for needs it or not: ISNet's
five side outputs (each a convolution, a resize to 1024² and a sigmoid) cost 3-4 % of its run,
and the engine uses one output.  In the CPU form the others are one-element constants, so that
output numbers stay those of the model file (the registry's output_index), and the nodes that
made them are gone.
Needs the ``onnx`` package.
"""

import numpy as np

FLOAT, FLOAT16 = 1, 10          # onnx.TensorProto's element types


def is_fp16(model):
    """Whether the graph holds fp16 weights (so that its fp32 form is worth making)."""
    graph = model.graph
    return any(tensor.data_type == FLOAT16 for tensor in graph.initializer) or any(
        node.op_type == "Cast" and _cast_target(node) == FLOAT16 for node in graph.node)


def convert(model):
    """Turns ``model`` (an onnx.ModelProto) to fp32 in place and returns it."""
    from onnx import numpy_helper

    def widened(tensor):
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)

    for graph in _graphs(model.graph):
        for index, tensor in enumerate(graph.initializer):
            if tensor.data_type == FLOAT16:
                graph.initializer[index].CopyFrom(widened(tensor))
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t") and attribute.t.data_type == FLOAT16:
                    attribute.t.CopyFrom(widened(attribute.t))
                if node.op_type == "Cast" and attribute.name == "to" and attribute.i == FLOAT16:
                    attribute.i = FLOAT
        for value in list(graph.input) + list(graph.output):
            tensor_type = value.type.tensor_type
            if tensor_type.elem_type == FLOAT16:
                tensor_type.elem_type = FLOAT
        del graph.value_info[:]
    sort_nodes(model.graph)
    return model


def sort_nodes(graph):
    """Puts the graph's nodes in an order where each comes after the nodes it reads from."""
    made_by = {output: node_index for node_index, node in enumerate(graph.node) for output in node.output}
    order, placed, visiting = [], set(), set()
    for start in range(len(graph.node)):
        stack = [(start, False)]
        while stack:                    # depth first, without recursion (graphs are deep)
            index, inputs_done = stack.pop()
            if index in placed:
                continue
            if inputs_done:
                visiting.discard(index)
                placed.add(index)
                order.append(index)
                continue
            if index in visiting:
                raise ValueError("the graph has a cycle through node %r" % graph.node[index].name)
            visiting.add(index)
            stack.append((index, True))
            stack.extend((made_by[name], False) for name in graph.node[index].input
                         if name in made_by and made_by[name] not in placed)
    if order != list(range(len(graph.node))):
        nodes = [graph.node[index] for index in order]
        del graph.node[:]
        graph.node.extend(nodes)


def _cast_target(node):
    return next((attribute.i for attribute in node.attribute if attribute.name == "to"), None)


def _graphs(graph):
    """The graph and the subgraphs of its If/Loop/Scan nodes."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)


def only_output(model, index):
    """Makes every graph output but number ``index`` a one-element constant, in place; returns
    how many were replaced.  Outputs that other nodes also read stay as they are, and so do
    ones read inside subgraphs (they are computed anyway)."""
    from onnx import helper

    graph = model.graph
    read = {name for node in graph.node for name in node.input}
    read |= {name for inner in _graphs(graph) if inner is not graph for node in inner.node for name in node.input}
    made_by = {name: node for node in graph.node for name in node.output}
    replaced = 0
    for number, output in enumerate(graph.output):
        if number == index or output.name in read or output.name not in made_by:
            continue
        node = made_by[output.name]
        node.output[list(node.output).index(output.name)] = output.name + "::unused"
        element = output.type.tensor_type.elem_type or FLOAT
        graph.node.append(helper.make_node(
            "Constant", [], [output.name],
            value=helper.make_tensor(output.name + "::placeholder", element, [1], [0])))
        shape = output.type.tensor_type.shape
        del shape.dim[:]
        shape.dim.add().dim_value = 1
        replaced += 1
    return replaced


def drop_unneeded(graph):
    """Removes the nodes that no graph output needs, and the initializers only they read, in place;
    returns how many nodes went.  onnxruntime runs every node of a graph, needed or not (a graph
    output made a constant leaves its branch still running)."""
    # ("" names an optional input or output left out.)
    made_by = {name: index for index, node in enumerate(graph.node) for name in node.output if name}

    def reads(node):
        names = list(node.input)
        for attribute in node.attribute:        # what its subgraphs read from this graph
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                names += [name for inner in _graphs(subgraph) for each in inner.node for name in each.input]
        return names

    kept = set()
    pending = [made_by[output.name] for output in graph.output if output.name in made_by]
    while pending:
        index = pending.pop()
        if index in kept:
            continue
        kept.add(index)
        pending.extend(made_by[name] for name in reads(graph.node[index]) if name in made_by)
    dropped = len(graph.node) - len(kept)
    if dropped:
        nodes = [node for index, node in enumerate(graph.node) if index in kept]
        del graph.node[:]
        graph.node.extend(nodes)
        read = {name for node in nodes for name in reads(node)} | {output.name for output in graph.output}
        unread = {tensor.name for tensor in graph.initializer if tensor.name not in read}
        initializers = [tensor for tensor in graph.initializer if tensor.name not in unread]
        del graph.initializer[:]
        graph.initializer.extend(initializers)
        # Older files also list their initializers as graph inputs: without its initializer, such
        # an input would become one that must be fed.
        inputs = [value for value in graph.input if value.name not in unread]
        del graph.input[:]
        graph.input.extend(inputs)
        known = read | {name for node in nodes for name in node.output}
        annotations = [value for value in graph.value_info if value.name in known]
        del graph.value_info[:]
        graph.value_info.extend(annotations)
    return dropped


def cpu_form(path, output_index=0):
    """The serialised CPU form of the ONNX file at ``path`` (fp32 weights, only output number
    ``output_index`` computed), or None when that is the file as it is.  None too without the
    onnx package: the file then runs as it is."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path))
    fp16 = is_fp16(model)
    if fp16:
        convert(model)
    replaced = only_output(model, output_index)
    if not drop_unneeded(model.graph) and not replaced and not fp16:
        return None
    return model.SerializeToString()
