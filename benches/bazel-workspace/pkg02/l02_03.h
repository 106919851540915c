#ifndef PKG02_L02_03_H
#define PKG02_L02_03_H
#include <string>
#include <vector>

namespace l02_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_03

#endif
