#version 330 core
// probtalk3d: Lambert + a soft Blinn-Phong highlight for each directional light, plus ambient light.
// Back faces (seen through the open mouth) are drawn dark, like a mouth cavity.
struct DirectionalLight {
    vec3 color;
    float intensity;
    vec3 direction;
};
struct Material {
    vec3 emissive_factor;
    vec4 base_color_factor;
    float metallic_factor;
    float roughness_factor;
};

uniform Material material;
uniform vec3 cam_pos;
uniform vec3 ambient_light;
uniform int n_directional_lights;
uniform DirectionalLight directional_lights[MAX_DIRECTIONAL_LIGHTS];

in vec3 frag_position;
in vec3 frag_normal;
in vec4 frag_color;

out vec4 frag_out;

void main()
{
    vec4 base = material.base_color_factor * frag_color;
    if (!gl_FrontFacing) {
        frag_out = vec4(base.rgb * 0.10, 1.0);
        return;
    }
    vec3 n = normalize(frag_normal);
    vec3 v = normalize(cam_pos - frag_position);
    float shininess = mix(64.0, 8.0, clamp(material.roughness_factor, 0.0, 1.0));
    vec3 c = ambient_light * base.rgb;
    for (int i = 0; i < n_directional_lights; i++) {
        vec3 l = -directional_lights[i].direction;
        vec3 li = directional_lights[i].color * directional_lights[i].intensity;
        float diffuse = max(dot(n, l), 0.0);
        vec3 h = normalize(l + v);
        float spec = diffuse > 0.0 ? pow(max(dot(n, h), 0.0), shininess) * 0.12 : 0.0;
        c += li * (base.rgb * diffuse + vec3(spec));
    }
    frag_out = vec4(clamp(c, 0.0, 1.0), 1.0);
}
