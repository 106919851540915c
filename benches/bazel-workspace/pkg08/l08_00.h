#ifndef PKG08_L08_00_H
#define PKG08_L08_00_H
#include <string>
#include <vector>

namespace l08_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_00

#endif
