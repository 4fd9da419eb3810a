<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
        <paletteEntry value="1" color="#db0e9a" alpha="255" label="changed to building"/>
        <paletteEntry value="2" color="#938e7b" alpha="255" label="changed to pervious surface"/>
        <paletteEntry value="3" color="#f80c00" alpha="255" label="changed to impervious surface"/>
        <paletteEntry value="4" color="#a97101" alpha="255" label="changed to bare soil"/>
        <paletteEntry value="5" color="#1553ae" alpha="255" label="changed to water"/>
        <paletteEntry value="6" color="#194a26" alpha="255" label="changed to coniferous"/>
        <paletteEntry value="7" color="#46e483" alpha="255" label="changed to deciduous"/>
        <paletteEntry value="8" color="#f3a60d" alpha="255" label="changed to brushwood"/>
        <paletteEntry value="9" color="#660082" alpha="255" label="changed to vineyard"/>
        <paletteEntry value="10" color="#55ff00" alpha="255" label="changed to herbaceous vegetation"/>
        <paletteEntry value="11" color="#fff30d" alpha="255" label="changed to agricultural land"/>
        <paletteEntry value="12" color="#e4df7c" alpha="255" label="changed to plowed land"/>
        <paletteEntry value="13" color="#3de6eb" alpha="255" label="changed to swimming pool"/>
        <paletteEntry value="14" color="#ffffff" alpha="255" label="changed to snow"/>
        <paletteEntry value="15" color="#8ab3a0" alpha="255" label="changed to clear cut"/>
        <paletteEntry value="16" color="#6b714f" alpha="255" label="changed to mixed"/>
        <paletteEntry value="17" color="#c5dc42" alpha="255" label="changed to ligneous"/>
        <paletteEntry value="18" color="#9999ff" alpha="255" label="changed to greenhouse"/>
        <paletteEntry value="19" color="#000000" alpha="255" label="changed to other"/>
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
