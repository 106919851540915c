#ifndef PKG02_L02_00_H
#define PKG02_L02_00_H
#include <string>
#include <vector>

namespace l02_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_00

#endif
